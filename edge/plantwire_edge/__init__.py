"""plantwire_edge: the gateway that reads machines and publishes Sparkplug B to the broker."""
