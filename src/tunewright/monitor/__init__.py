"""The monitor lane: capture of production requests and feedback, and what is learned from them."""
