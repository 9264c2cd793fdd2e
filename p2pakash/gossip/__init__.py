"""The gossip layer: transports, peer management and pubsub."""
