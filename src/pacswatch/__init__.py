"""pacswatch: find exposed DICOM/PACS servers, measure exposure without taking patient data."""

__version__ = "0.1.0"
