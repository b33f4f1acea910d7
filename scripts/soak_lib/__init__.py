"""Helpers of scripts/soak and scripts/load (issue 15, items 4 and 5): a Modbus
counter whose every value the script knows, a UDP relay that cuts the link and
records the wire, the lwgate process (kill -9, restart, strace), the end-to-end
ledger, the power-cut trace checker and the load generator. The pure parts
(`ledger`, `trace`, `coap_bytes`) do no I/O and are unit-tested in tests/test_soak.py."""
