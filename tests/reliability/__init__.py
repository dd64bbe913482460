"""Reliability: what a bad model server, search provider or client does to the gateway.

Here: every fault mode of the stand-ins (mmsr_bench/standins/faults.py) against a live gateway
(test_faults.py). The soak under random faults is benchmarks/soak.py (benchmarks/results/soak.md).
The cases of each defect the fault campaign found (issue 13) live next to the code they test:

1. many messages or parts: tests/api/test_errors.py::test_too_many_messages_or_parts_are_400_naming_the_limit
2. malformed backend stream: tests/api/test_backend_errors.py
   (test_a_malformed_stream_is_retried_then_502_not_500),
   tests/backends/test_openai_http.py (malformed, split and CRLF events)
3. streaming clients that stop reading: tests/api/test_slow_clients.py
   (test_a_streaming_client_that_stops_reading_frees_its_slot)
4. probes with API keys: tests/api/test_errors.py::test_an_open_ready_names_no_address
5. lone surrogates: tests/api/test_errors.py::test_lone_surrogates_are_400_naming_the_field
6. backend 4xx: tests/api/test_backend_errors.py (context length, other statuses, no address)
7. the backend key echoed: tests/api/test_backend_errors.py
   (test_the_backend_key_echoed_by_the_model_server_is_masked),
   test_faults.py (echo)
8. header and body read timeouts: tests/api/test_slow_clients.py
9. graceful shutdown: tests/api/test_shutdown.py
10. EXIF orientation: tests/test_images.py
    (test_the_exif_orientation_is_applied_and_such_bytes_are_never_sent_as_they_are)
11. image URL fetches inside the deadline: tests/api/test_errors.py
    (test_image_urls_are_fetched_together_within_the_request_deadline)
12. no redirect built from Host: tests/api/test_errors.py::test_no_redirect_is_built_from_the_host_header

Smaller: decoded formats (tests/test_images.py), the OpenAPI 400 (tests/api/test_errors.py),
fetch_allow ports and SSRF disguises (tests/api/test_ssrf.py, tests/search/), a hung provider
bounded by the search deadline (test_faults.py), validation messages (tests/api/test_errors.py).
"""
