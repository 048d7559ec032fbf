"""Layer `oci`: images and registries (the distribution API client, image sources, the push engine)."""
