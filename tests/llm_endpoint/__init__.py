"""A local OpenAI-compatible chat-completions endpoint for tests and benchmarks (a test fixture, not a product
feature). It answers from a known generative model, the LLMSynthor e-commerce network, and injects faults on
demand."""
