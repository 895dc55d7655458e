"""Agent replies back out: one sender per channel, and the dispatcher that retries them."""
