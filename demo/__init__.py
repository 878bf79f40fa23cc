"""`just demo`: the whole thing offline — fake upstream, real mitmdump, real SDK client."""
