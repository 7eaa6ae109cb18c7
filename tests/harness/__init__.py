"""Test harness: in-process ComfyUI, a real ComfyUI server process, UI-workflow conversion, core workflows."""
