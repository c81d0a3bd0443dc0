"""One router per resource, as MONAI Label's ``monailabel/endpoints/``: thin (parse, call the library, render)."""
