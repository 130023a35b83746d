"""Sweeps: presets (data), planning (presets to RunConfigs, checked before any run), launchers and the sweep loop."""
