"""HTTP surfaces of the experiment manager."""
