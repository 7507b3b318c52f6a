"""The bundled weights (installed as package data from weights/)."""
