"""``/api/v1/pki``: the fleet CA's certificate and the CRL (public)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from fleet.api.deps import runtime_of

router = APIRouter(prefix="/pki", tags=["enrollment"])


PEM = "application/x-pem-file"


@router.get("/ca.crt", response_class=Response, responses={200: {"content": {PEM: {}}}})
def ca_certificate(request: Request) -> Response:
    """The fleet CA's certificate (what devices and the broker trust)."""
    return Response(runtime_of(request).ca.certificate_pem, media_type=PEM)


@router.get("/crl.pem", response_class=Response, responses={200: {"content": {PEM: {}}}})
def crl(request: Request) -> Response:
    """The CRL the broker holds: every revoked, unexpired certificate (valid 7 days, rewritten daily)."""
    return Response(runtime_of(request).crl.current_pem(), media_type=PEM,
                    headers={"Cache-Control": "max-age=300"})
