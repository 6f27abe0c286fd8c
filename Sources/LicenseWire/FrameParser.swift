import LicenseCore
import NIOCore

/// Splits a byte stream into frames: a 4-byte big-endian length, then that many bytes.
///
/// The length is checked against `maxFrameBytes` as soon as its four bytes arrive, before any
/// of the body is kept, and zero is refused. After a refusal the parser stays failed: the
/// stream can no longer be trusted, and all further input is dropped.
public struct FrameParser: Sendable {
    /// What the parser found.
    public enum Next: Sendable, Equatable {
        /// A complete frame body.
        case frame(ByteBuffer)
        /// More bytes are needed.
        case needMoreData
        /// The stream is broken (zero or oversized length); nothing more will be parsed.
        case invalid(LicenseError)
    }

    public let maxFrameBytes: Int
    private var buffer: ByteBuffer?
    private var failure: LicenseError?

    public init(maxFrameBytes: Int = WireProtocol.defaultMaxFrameBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Adds received bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        guard failure == nil else { return }
        if buffer == nil {
            buffer = bytes
        } else {
            var incoming = bytes
            buffer!.writeBuffer(&incoming)
        }
    }

    /// Whether part of a frame has been received but not all of it.
    public var hasPartialFrame: Bool { failure == nil && (buffer?.readableBytes ?? 0) > 0 }

    /// The next complete frame, if any.
    public mutating func next() -> Next {
        if let failure { return .invalid(failure) }
        guard var buffer, let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        if length == 0 {
            return fail(LicenseError(.invalidArgument, .malformedFrame, "a frame of length zero is not allowed"))
        }
        if length > maxFrameBytes {
            return fail(LicenseError(.resourceExhausted, .frameTooLarge, "frame of \(length) bytes exceeds the limit of \(maxFrameBytes)"))
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        // A copy, so the frame does not pin the whole cumulation buffer in memory.
        let body = ByteBuffer(bytes: buffer.readBytes(length: Int(length))!)
        if buffer.readableBytes == 0 {
            self.buffer = nil
        } else {
            buffer.discardReadBytes()
            self.buffer = buffer
        }
        return .frame(body)
    }

    private mutating func fail(_ error: LicenseError) -> Next {
        failure = error
        buffer = nil
        return .invalid(error)
    }
}

/// Frame encoding: a 4-byte big-endian length, then the message.
public enum FrameEncoder {
    /// Writes `message` as one frame.
    public static func encode(_ message: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
    }

    /// Frames an already-encoded message body (as `FrameParser` returns it).
    public static func framed(_ body: ByteBuffer) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(4 + body.readableBytes)
        buffer.writeInteger(UInt32(body.readableBytes))
        var body = body
        buffer.writeBuffer(&body)
        return buffer
    }

    /// Encodes a protobuf message as one frame.
    public static func frame(_ message: some SwiftProtobufEncodable, allocator: ByteBufferAllocator = .init()) throws -> ByteBuffer {
        let bytes = try message.encodedBytes()
        var buffer = allocator.buffer(capacity: 4 + bytes.count)
        encode(bytes, into: &buffer)
        return buffer
    }
}
