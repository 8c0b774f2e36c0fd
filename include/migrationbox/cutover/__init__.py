"""Canary cutover: live probes → the cloud's monitoring API → rollback rules → DNS weights.

``metrics`` probes a service for real and publishes what it saw to CloudWatch (the
emulator in the lab) and reads it back; ``rules`` holds the plan's automatic rollback
triggers; ``controller`` moves weighted DNS through the steps and goes back to 100 %
source the moment a trigger fires.
"""
