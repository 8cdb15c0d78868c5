"""SIP transactions: the four RFC 3261 §17 machines, their timers, and the layer that matches them."""
