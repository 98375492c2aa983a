"""Services own transactions and know nothing of HTTP or MQTT; they return plain data."""
