"""Small programs that play a workload inside a world and print JSON about what they saw."""
