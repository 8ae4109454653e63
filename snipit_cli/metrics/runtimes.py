"""The runtimes ``--latency`` can time a forward pass on, free of torch: the CLI builds its
``--latency-runtime`` choices from them at start-up, before any command needs torch."""

#: Eager PyTorch as the model is (NCHW); eager PyTorch with weights and input in channels-last
#: (the layout oneDNN's CPU kernels run natively); the model exported to ONNX and run by
#: onnxruntime's CPU provider (BatchNorm folded, activations fused: how many deploy it).
RUNTIMES = ("torch", "channels-last", "onnxruntime")
