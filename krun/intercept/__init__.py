"""Traffic interception: which mode (`choose`, pure) from what the machine allows (`probe`)."""
