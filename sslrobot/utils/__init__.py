"""Small shared helpers (atomic files, devices, configs, architectures, versions)."""
