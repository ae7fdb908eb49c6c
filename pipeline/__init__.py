"""TFX pipeline, its trainer module and the Beam knowledge job."""
