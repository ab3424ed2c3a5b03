"""The registry's errors, each with Confluent's error_code and HTTP status.

    RegistryError(EmbedlogError)        error_code, http_status, message
    ├─ SubjectNotFound          40401   404
    ├─ VersionNotFound          40402   404
    ├─ SchemaNotFound           40403   404
    ├─ SubjectSoftDeleted       40404   404   (the subject is soft-deleted)
    ├─ SubjectNotSoftDeleted    40405   404   (permanent delete before the soft one)
    ├─ VersionSoftDeleted       40406   404
    ├─ VersionNotSoftDeleted    40407   404
    ├─ CompatibilityNotSet      40408   404   (no subject-level compatibility)
    ├─ ModeNotSet               40409   404   (no subject-level mode)
    ├─ IncompatibleSchema       409     409
    ├─ InvalidSchemaError       42201   422
    ├─ InvalidVersion           42202   422
    ├─ InvalidCompatibility     42203   422
    ├─ InvalidMode              42204   422
    ├─ OperationNotPermitted    42205   422   (read-only mode, import rules)
    ├─ ReferenceExists          42206   422   (deleting what another schema references)
    ├─ InvalidSubject           42208   422
    └─ StoreError               50001   500
"""
from __future__ import annotations

from ..storage._errors import EmbedlogError


class RegistryError(EmbedlogError):
    """Raised when a registry operation fails; `error_code` is Confluent's."""

    error_code = 50001
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def _error(name: str, code: int, status: int, doc: str):
    cls = type(name, (RegistryError,), {"error_code": code, "http_status": status, "__doc__": doc})
    cls.__module__ = __name__
    return cls


SubjectNotFound = _error("SubjectNotFound", 40401, 404, "Raised when the subject does not exist.")
VersionNotFound = _error("VersionNotFound", 40402, 404, "Raised when the subject has no such version.")
SchemaNotFound = _error("SchemaNotFound", 40403, 404, "Raised when no schema has that id or text.")
SubjectSoftDeleted = _error("SubjectSoftDeleted", 40404, 404, "Raised when the subject was soft-deleted.")
SubjectNotSoftDeleted = _error("SubjectNotSoftDeleted", 40405, 404,
                               "Raised when a permanent delete comes before the soft delete.")
VersionSoftDeleted = _error("VersionSoftDeleted", 40406, 404, "Raised when the version was soft-deleted.")
VersionNotSoftDeleted = _error("VersionNotSoftDeleted", 40407, 404,
                               "Raised when a version's permanent delete comes before its soft delete.")
CompatibilityNotSet = _error("CompatibilityNotSet", 40408, 404, "Raised when a subject has no compatibility of its own.")
ModeNotSet = _error("ModeNotSet", 40409, 404, "Raised when a subject has no mode of its own.")
IncompatibleSchema = _error("IncompatibleSchema", 409, 409, "Raised when a schema breaks the subject's compatibility.")
InvalidSchemaError = _error("InvalidSchemaError", 42201, 422, "Raised when a schema text is not a valid schema.")
InvalidVersion = _error("InvalidVersion", 42202, 422, "Raised when a version is not 1..2^31-1 or 'latest'.")
InvalidCompatibility = _error("InvalidCompatibility", 42203, 422, "Raised when a compatibility level is unknown.")
InvalidMode = _error("InvalidMode", 42204, 422, "Raised when a mode is unknown.")
OperationNotPermitted = _error("OperationNotPermitted", 42205, 422, "Raised when the mode forbids the operation.")
ReferenceExists = _error("ReferenceExists", 42206, 422, "Raised when deleting a schema others reference.")
StoreError = _error("StoreError", 50001, 500, "Raised when the _schemas topic cannot be read or written.")
InvalidSubject = _error("InvalidSubject", 42208, 422, "Raised when a subject name is empty or holds a NUL.")
