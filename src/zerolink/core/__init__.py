"""Routing and queues; pure logic, time is a parameter."""
