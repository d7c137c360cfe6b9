"""Reading recordings and explaining them: attribution, KV-sizing inference, diff, reports."""
