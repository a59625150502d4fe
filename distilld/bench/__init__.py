"""``make bench``: engine throughput, state size, and representativeness against random sampling."""
