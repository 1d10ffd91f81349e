"""simnet Lightning: a SIMULATION of Core Lightning's lightningd (JSON-RPC, cl-zmq) and the
simulated SC Cluster hub. Test equipment only."""
