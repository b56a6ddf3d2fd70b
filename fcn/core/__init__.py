"""Foundations every folder may use: errors, config checks, atomic files, safe torch loading,
classes and colours, input normalisation."""
