print("{\"result\": {\"value\": NaN}}", flush=True)
