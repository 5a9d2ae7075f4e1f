"""``TaskHandle``: a submitted task, read again on demand, and waited for."""
