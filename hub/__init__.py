"""The venue hub: sales-side records, online check-in, whitelists and the MQTT bridge to gates."""
