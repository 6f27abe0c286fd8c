import LicenseCore
import LicenseWire
import NIOCore
import Testing

@Suite("Frame parser")
struct FrameParserTests {
    func frame(_ bytes: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        FrameEncoder.encode(bytes, into: &buffer)
        return buffer
    }

    @Test func reassemblesAFrameDeliveredByteByByte() {
        var parser = FrameParser(maxFrameBytes: 1024)
        let whole = frame([1, 2, 3, 4, 5])
        for (i, byte) in whole.readableBytesView.enumerated() {
            #expect(parser.next() == .needMoreData)
            parser.append(ByteBuffer(bytes: [byte]))
            #expect(parser.hasPartialFrame, "byte \(i) is buffered")
        }
        #expect(parser.next() == .frame(ByteBuffer(bytes: [1, 2, 3, 4, 5])))
        #expect(parser.next() == .needMoreData)
        #expect(!parser.hasPartialFrame)
    }

    @Test func splitsManyFramesInOneBuffer() {
        var parser = FrameParser(maxFrameBytes: 1024)
        var all = ByteBuffer()
        for n in 1...50 {
            var one = frame(Array(repeating: UInt8(n), count: n))
            all.writeBuffer(&one)
        }
        var partial = frame([9, 9, 9])
        all.writeBuffer(&partial)
        all.moveWriterIndex(to: all.writerIndex - 1)
        parser.append(all)
        for n in 1...50 {
            #expect(parser.next() == .frame(ByteBuffer(bytes: Array(repeating: UInt8(n), count: n))))
        }
        #expect(parser.next() == .needMoreData)
        #expect(parser.hasPartialFrame)
        parser.append(ByteBuffer(bytes: [9]))
        #expect(parser.next() == .frame(ByteBuffer(bytes: [9, 9, 9])))
    }

    @Test func refusesAnOversizedPrefixBeforeTheBodyArrives() {
        var parser = FrameParser(maxFrameBytes: 64 * 1024)
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt32(64 * 1024 + 1))
        parser.append(prefix)
        guard case .invalid(let error) = parser.next() else {
            Issue.record("an oversized prefix must be refused at once")
            return
        }
        #expect(error.reason == .frameTooLarge)
        #expect(error.code == .resourceExhausted)
        // The parser stays failed and keeps nothing of what follows.
        parser.append(ByteBuffer(repeating: 0, count: 100_000))
        #expect(!parser.hasPartialFrame)
        guard case .invalid = parser.next() else {
            Issue.record("a failed parser stays failed")
            return
        }
    }

    @Test func acceptsAFrameOfExactlyTheLimit() {
        var parser = FrameParser(maxFrameBytes: 16)
        parser.append(frame(Array(repeating: 7, count: 16)))
        #expect(parser.next() == .frame(ByteBuffer(repeating: 7, count: 16)))
    }

    @Test func refusesAZeroLengthFrame() {
        var parser = FrameParser()
        parser.append(ByteBuffer(bytes: [0, 0, 0, 0, 1, 2]))
        guard case .invalid(let error) = parser.next() else {
            Issue.record("zero length must be refused")
            return
        }
        #expect(error.reason == .malformedFrame)
    }

    @Test func decodesAndRejectsProtobufBodies() throws {
        var request = ClientFrame()
        request.id = 42
        request.release.sessionID = "ses_1"
        var parser = FrameParser()
        parser.append(try FrameEncoder.frame(request))
        guard case .frame(let body) = parser.next() else {
            Issue.record("expected a frame")
            return
        }
        #expect(try ClientFrame.decode(body) == request)
        let error = #expect(throws: LicenseError.self) { try ClientFrame.decode(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF])) }
        #expect(error?.reason == .malformedFrame)
    }

    @Test func unknownFieldsAreIgnoredAndAnUnknownCallDecodesToNoCall() throws {
        // id = 7, then field 999 (a call this server does not know) as a length-delimited value.
        let bytes: [UInt8] = [0x08, 0x07, 0xBA, 0x3E, 0x02, 0x08, 0x01]
        let frame = try ClientFrame.decode(ByteBuffer(bytes: bytes))
        #expect(frame.id == 7)
        #expect(frame.call == nil)
    }

    @Test func statusMappingUsesGRPCNumbers() {
        let status = WireStatus(LicenseError(.resourceExhausted, .noSeats, "full", retryAfter: .milliseconds(1500)))
        #expect(status.code.rawValue == 8)
        #expect(status.reason == "NO_SEATS")
        #expect(status.retryAfterMs == 1500)
        #expect(WireStatus(LicenseError(.unauthenticated, .invalidCredential, "x")).code.rawValue == 16)
        #expect(WireStatus(LicenseError(.unavailable, .backendUnavailable, "x")).code.rawValue == 14)
        #expect(WireStatus(LicenseError(.notFound, .licenseUnknown, "x")).code.rawValue == 5)
    }
}
