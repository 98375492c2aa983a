"""Provisioning: device enrollment, broker security, device-side config/commands, the ops CLI."""
