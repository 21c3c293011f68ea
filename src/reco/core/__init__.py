"""What every stage uses: typed errors, paths and safe writes, devices, YAML configs and presets,
image reading, geometry, metrics, packaged samples, worker processes and label colours."""
