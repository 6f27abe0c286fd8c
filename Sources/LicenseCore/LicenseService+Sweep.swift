extension LicenseService {
    /// Reconciles one license's session rows with its seats (see `SessionSweep`): rows whose seat
    /// is gone are ended as lapsed (audited as `session.lapse` by the server), and handles
    /// without a live row are released. Safe to run on any number of replicas at once: every
    /// step is idempotent.
    @discardableResult
    public func sweep(license: LicenseID) async throws -> SessionSweep {
        let before = try await backend("the repository") { try await repository.sessions(license: license, includeEnded: false) }
        let handles = try await backend("the seat store") { try await seats.leases(licenseID: license) }
        let after = try await backend("the repository") { try await repository.sessions(license: license, includeEnded: false) }
        let plan = SessionSweep(before: before, handles: handles, after: after)
        for session in plan.lapsed {
            // Ended, then released: a heartbeat that re-took the seat meanwhile loses it.
            try await end(session, reason: .lapsed, actor: nil, in: repository, action: "session.lapse")
        }
        for id in plan.orphanHandles {
            _ = try await backend("the seat store") { try await seats.release(licenseID: license, sessionID: id) }
        }
        if !plan.isEmpty {
            logger.info("swept sessions", metadata: [
                "license": "\(license)", "lapsed": "\(plan.lapsed.count)", "released": "\(plan.orphanHandles.count)",
            ])
        }
        return plan
    }

    /// Sweeps every license that has live sessions. A license whose sweep fails is counted and
    /// skipped; the others are still swept.
    public func sweepAll() async throws -> SweepReport {
        var report = SweepReport()
        let licenses = try await backend("the repository") { try await repository.licensesWithLiveSessions() }
        for license in licenses {
            try Task.checkCancellation()
            report.licenses += 1
            do {
                let plan = try await sweep(license: license)
                report.lapsedSessions += plan.lapsed.count
                report.releasedHandles += plan.orphanHandles.count
            } catch {
                report.failedLicenses += 1
                logger.debug("license sweep failed", metadata: ["license": "\(license)", "error": "\(type(of: error))"])
            }
        }
        return report
    }
}
