"""A SMART on FHIR standalone launch by the PyPI package fhirclient, driven
by the Rust test `smart::fhirclient_standalone_launch`.

Arguments: client_id, FHIR base, redirect URI, scope, another patient's id.
Protocol over standard input and output, one JSON object a line:
  -> {"authorize_url": ...}    the URL fhirclient builds (PKCE S256)
  <- {"callback": ...}         the redirect URL the user agent came back to
  -> {"patient_id": ..., "family": ..., "observations": N,
      "condition_search": STATUS, "other_patient": STATUS}
"""

import json
import sys

from fhirclient import client
from fhirclient.models.condition import Condition
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRPermissionDeniedException


def refused(action):
    """The HTTP status of an action that should be refused (200 if it was not)."""
    try:
        action()
        return 200
    except FHIRPermissionDeniedException as e:
        outcome = e.response.json()
        assert outcome["resourceType"] == "OperationOutcome", outcome
        return e.response.status_code


def main():
    client_id, base, redirect_uri, scope, other = sys.argv[1:6]
    smart = client.FHIRClient(
        settings={
            "app_id": client_id,
            "api_base": base,
            "redirect_uri": redirect_uri,
            "scope": scope,
        }
    )
    print(json.dumps({"authorize_url": smart.authorize_url}), flush=True)
    callback = json.loads(sys.stdin.readline())["callback"]
    smart.handle_callback(callback)
    patient = smart.patient
    observations = Observation.where(struct={"patient": smart.patient_id}).perform_resources(
        smart.server
    )
    result = {
        "patient_id": smart.patient_id,
        "family": patient.name[0].family,
        "observations": len(observations),
        "condition_search": refused(
            lambda: Condition.where(struct={"patient": smart.patient_id}).perform_resources(
                smart.server
            )
        ),
        "other_patient": refused(lambda: Patient.read(other, smart.server)),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
