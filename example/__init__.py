"""The built-in example: the KV sizer workload, its Docker image, and the native-vs-Docker demo."""
