"""Platform adapters: each turns its platform's events into core ``EditRequest``s."""
