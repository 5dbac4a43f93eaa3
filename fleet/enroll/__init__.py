"""Device enrollment on the fleet: tokens, enrollments and certificates in the database
(:mod:`fleet.enroll.store`), what the API's routes share (:mod:`fleet.enroll.requests`; the
routes: ``enrollments``, ``enrollment_tokens``, ``pki``, ``certificates`` in ``fleet/api/routes/``),
device request authentication (:mod:`fleet.enroll.deviceauth`), the CRL the broker reads
(:mod:`fleet.enroll.crl`, kept fresh by :mod:`fleet.enroll.crl_refresh`), over the CA and rules
of :mod:`provisioning`."""
