"""Sans-IO DICOM network protocol: PS3.8 PDUs, PS3.7 command sets, the requestor's state machine.

Bytes in, events out. Nothing here opens a socket, reads a clock or configures logging.
"""
