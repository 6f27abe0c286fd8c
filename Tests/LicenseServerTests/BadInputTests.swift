import Foundation
import LicenseClient
import LicenseCore
import LicenseWire
import Testing

/// Every bad input has a defined answer, costs nothing and leaves the server serving others.
@Suite("Bad input", .serialized)
struct BadInputTests {
    func authenticated(_ server: TestServer) async throws -> RawConnection {
        let raw = try await RawConnection(port: server.port, caFile: server.caFile)
        try await raw.write(frame: .hello(id: 1, apiKey: TestServer.bootstrapKey))
        #expect(try await raw.readFrame()?.status.isOK == true)
        return raw
    }

    /// The server still serves a fresh, well-behaved client.
    func expectServing(_ server: TestServer) async throws {
        let client = try await server.connect()
        _ = try await client.signingKeysJSON()
        await client.close()
    }

    @Test func zeroLengthFrameGetsMalformedFrameAndClose() async throws {
        try await TestServer.run { server in
            let raw = try await authenticated(server)
            try await raw.write([0, 0, 0, 0])
            let answer = try #require(try await raw.readFrame())
            #expect(answer.id == 0)
            #expect(answer.status.code == .invalidArgument)
            #expect(answer.status.reason == "MALFORMED_FRAME")
            #expect(await raw.readsUntilClosed())
            try await expectServing(server)
        }
    }

    @Test func oversizedPrefixIsRefusedBeforeTheBody() async throws {
        try await TestServer.run(configure: { $0.maxFrameBytes = 1024 }) { server in
            let raw = try await authenticated(server)
            // Only the prefix is sent: the answer must not wait for the 1 GiB body.
            try await raw.write([0x40, 0, 0, 0])
            let answer = try #require(try await within { try await raw.readFrame() })
            #expect(answer.status.code == .resourceExhausted)
            #expect(answer.status.reason == "FRAME_TOO_LARGE")
            #expect(await raw.readsUntilClosed())
            try await expectServing(server)
        }
    }

    @Test func garbageProtobufGetsMalformedFrameAndTheConnectionGoesOn() async throws {
        try await TestServer.run { server in
            let raw = try await authenticated(server)
            try await raw.write([0, 0, 0, 3, 0xFF, 0xFF, 0xFF])
            let answer = try #require(try await raw.readFrame())
            #expect(answer.id == 0)
            #expect(answer.status.reason == "MALFORMED_FRAME")
            try await raw.write(frame: .make(id: 9, .getSigningKeys(.init())))
            let next = try #require(try await raw.readFrame())
            #expect(next.id == 9)
            #expect(next.status.isOK)
            await raw.close()
        }
    }

    @Test func anUnknownCallGetsUnimplemented() async throws {
        try await TestServer.run { server in
            let raw = try await authenticated(server)
            // id 7 and field 999, a call from a newer protocol revision.
            let body: [UInt8] = [0x08, 0x07, 0xBA, 0x3E, 0x02, 0x08, 0x01]
            try await raw.write([0, 0, 0, UInt8(body.count)] + body)
            let answer = try #require(try await raw.readFrame())
            #expect(answer.id == 7)
            #expect(answer.status.code == .unimplemented)
            #expect(answer.status.reason == "UNKNOWN_CALL")
            await raw.close()
        }
    }

    @Test func aZeroRequestIDIsRefused() async throws {
        try await TestServer.run { server in
            let raw = try await authenticated(server)
            try await raw.write(frame: .make(id: 0, .getSigningKeys(.init())))
            let answer = try #require(try await raw.readFrame())
            #expect(answer.status.code == .invalidArgument)
            await raw.close()
        }
    }

    @Test func callsBeforeHelloAndBadCredentialsAreUnauthenticated() async throws {
        try await TestServer.run { server in
            let raw = try await RawConnection(port: server.port, caFile: server.caFile)
            var acquire = Coditect_License_V1_AcquireRequest()
            acquire.licenseID = "x"
            acquire.hardwareID = "y"
            try await raw.write(frame: .make(id: 5, .acquire(acquire)))
            let before = try #require(try await raw.readFrame())
            #expect(before.id == 5)
            #expect(before.status.code == .unauthenticated)
            #expect(before.status.reason == "HELLO_REQUIRED")
            try await raw.write(frame: .hello(id: 6, apiKey: "lk_this_key_does_not_exist_000"))
            let bad = try #require(try await raw.readFrame())
            #expect(bad.status.code == .unauthenticated)
            #expect(bad.status.reason == "INVALID_CREDENTIAL")
            #expect(!bad.status.message.contains("lk_"), "a credential never appears in an answer")
            var old = Coditect_License_V1_Hello()
            old.protocolVersion = 99
            old.apiKey = TestServer.bootstrapKey
            try await raw.write(frame: .make(id: 7, .hello(old)))
            #expect(try await raw.readFrame()?.status.reason == "UNSUPPORTED_PROTOCOL_VERSION")
            await raw.close()
        }
    }

    @Test func aPlaintextClientIsToldToUseTLS() async throws {
        try await TestServer.run { server in
            let raw = try await RawConnection(port: server.port, caFile: nil)
            try await raw.write(frame: .hello(id: 1, apiKey: TestServer.bootstrapKey))
            let answer = try #require(try await raw.readFrame())
            #expect(answer.status.code == .failedPrecondition)
            #expect(answer.status.reason == "TLS_REQUIRED")
            #expect(await raw.readsUntilClosed())
            try await expectServing(server)
        }
    }

    @Test func aTricklingPeerHitsTheFrameDeadline() async throws {
        try await TestServer.run(configure: { $0.frameTimeout = .milliseconds(400) }) { server in
            let raw = try await authenticated(server)
            let frame = try FrameEncoder.frame(ClientFrame.make(id: 3, .getSigningKeys(.init())))
            let bytes = Array(frame.readableBytesView)
            // One byte every 150 ms: the connection is never idle, yet the frame never completes in time.
            let answer = try await within {
                async let reply = raw.readFrame()
                for byte in bytes.dropLast() {
                    try? await raw.write([byte])
                    try await Task.sleep(for: .milliseconds(150))
                }
                return try await reply
            }
            let error = try #require(answer)
            #expect(error.id == 0)
            #expect(error.status.code == .deadlineExceeded)
            #expect(error.status.reason == "FRAME_TIMEOUT")
            #expect(await raw.readsUntilClosed())
        }
    }

    @Test func aSilentPeerHitsTheIdleTimeout() async throws {
        try await TestServer.run(configure: { $0.idleTimeout = .milliseconds(300) }) { server in
            let raw = try await authenticated(server)
            let answer = try #require(try await within { try await raw.readFrame() })
            #expect(answer.status.reason == "IDLE_TIMEOUT")
            #expect(await raw.readsUntilClosed())
        }
    }

    @Test func aPeerThatNeverCompletesTheHandshakeIsClosed() async throws {
        try await TestServer.run(configure: { $0.frameTimeout = .milliseconds(300) }) { server in
            // Plaintext socket sending the first byte of a TLS record, then nothing.
            let raw = try await RawConnection(port: server.port, caFile: nil)
            try await raw.write([0x16, 0x03])
            #expect(try await within { await raw.readsUntilClosed() })
            try await expectServing(server)
        }
    }
}
