"""Developer tools for the pack: stand-in model files and the ComfyUI host bootstrap (never imported by the pack)."""
