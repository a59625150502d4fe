"""The Kafka daemon: consume → decode → reduce per partition and key → produce → commit."""
