"""Using a trained model: reading model files, inference, export, prediction output."""
