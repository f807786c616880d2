"""The identity guard: one study name in a storage belongs to one study file, and its trials to known versions of it.

The final phase's Optuna study keeps the study file's path, its fingerprint history and the file
itself (JSON, passwords masked); `guard_identity` refuses to mix another file's or a changed file's
trials into it unless asked.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from .contract import FINGERPRINT_ATTR, FINGERPRINTS_ATTR, SPEC_ATTR, STUDY_FILE_ATTR
from .errors import AblateError
from .planning import phase_name
from .redact import mask_document, mask_url
from .spec import Study


def guard_identity(study: Study, storage: optuna.storages.BaseStorage, allow_changed_spec: bool) -> optuna.Study:
    """Refuse to mix results: another file with this name, or this file changed since trials ran."""
    final = optuna.create_study(
        study_name=phase_name(study, "final"), storage=storage, direction="maximize", load_if_exists=True
    )
    attrs = final.user_attrs
    path = str(study.path.resolve())
    if FINGERPRINT_ATTR not in attrs:
        final.set_user_attr(STUDY_FILE_ATTR, path)
        final.set_user_attr(FINGERPRINT_ATTR, study.fingerprint)
        final.set_user_attr(FINGERPRINTS_ATTR, [study.fingerprint])
        final.set_user_attr(SPEC_ATTR, stored_document(study))
        return final
    if attrs[FINGERPRINT_ATTR] == study.fingerprint:
        if attrs.get(SPEC_ATTR) != stored_document(study):  # e.g. a password stored by an older version: masked now
            final.set_user_attr(SPEC_ATTR, stored_document(study))
        return final
    if attrs.get(STUDY_FILE_ATTR) != path and not allow_changed_spec:
        raise AblateError(
            f"{study.path}: storage {mask_url(study.storage)} already holds a study named {study.name!r} made from "
            f"another file ({attrs.get(STUDY_FILE_ATTR)}) with different contents; rename this study (key 'name') or "
            "use another storage, so results are not mixed."
        )
    if not allow_changed_spec:
        raise AblateError(
            f"{study.path}: the study file changed since its trials ran (fingerprint {attrs[FINGERPRINT_ATTR]} -> "
            f"{study.fingerprint}); re-run with --allow-changed-spec to continue (the report will say which trials "
            "came from which version), or give the changed study a new name."
        )
    history = list(attrs.get(FINGERPRINTS_ATTR, [attrs[FINGERPRINT_ATTR]]))
    final.set_user_attr(FINGERPRINTS_ATTR, history + [study.fingerprint])
    final.set_user_attr(FINGERPRINT_ATTR, study.fingerprint)
    final.set_user_attr(SPEC_ATTR, stored_document(study))
    return final


def stored_document(study: Study) -> dict[str, Any]:
    """The study file as the final study keeps it: JSON, every URL's password masked (storage is readable
    by everyone who can open the dashboard; the password must not be)."""
    return mask_document(json.loads(json.dumps(study.document, default=str)))
