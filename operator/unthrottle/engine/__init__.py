"""The recommendation engine: pure functions from statistics and a policy to a recommendation.

No I/O, no clock, no kopf: everything the engine knows arrives as arguments.
"""
