"""Device enrollment on the fleet: tokens, enrollments and certificates in the database
(:mod:`fleet.enroll.store`), the API (:mod:`fleet.enroll.routes`), device request authentication
(:mod:`fleet.enroll.deviceauth`) and the CRL the broker reads (:mod:`fleet.enroll.crl`), over the
CA and rules of :mod:`provisioning`."""
