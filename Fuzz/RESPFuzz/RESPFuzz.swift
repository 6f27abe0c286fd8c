// libFuzzer target for the RESP decoder.
//
//   swift build --scratch-path .build-fuzz --sanitize=fuzzer -Xswiftc -DFUZZING --product resp-fuzz
//   .build-fuzz/debug/resp-fuzz -runs=3000000 -max_len=4096 Fuzz/corpus/resp   (corpus folder optional)
//
// Built without -DFUZZING (as `swift build` does), the same target is a replayer: it runs each
// file named on the command line through the same checks, to reproduce a crash the fuzzer saved.
import LicenseRedis
import NIOCore

/// The checks every input must pass. The first byte chooses how the rest is split into chunks, so
/// the fuzzer explores partial replies too. Small limits make the caps reachable.
///
/// - decoding never crashes or traps, whatever the bytes;
/// - the bytes the decoder holds while a reply is incomplete never pass the reply cap;
/// - every decoded value, written out again, decodes to a value that writes the same bytes.
func checkOneInput(_ input: UnsafeRawBufferPointer) {
    guard let first = input.first else { return }
    let chunk = Int(first % 16) + 1
    let limits = RESPDecoder.Limits(maxBulkBytes: 512, maxElements: 64, maxDepth: 8, maxLineBytes: 128, maxReplyBytes: 2048)
    let processor = NIOSingleStepByteToMessageProcessor(RESPDecoder(limits: limits))
    let body = UnsafeRawBufferPointer(rebasing: input.dropFirst())
    var offset = 0
    var held = 0
    do {
        while offset < body.count {
            let end = min(body.count, offset + chunk)
            var buffer = ByteBufferAllocator().buffer(capacity: end - offset)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: body[offset..<end]))
            held += end - offset
            try processor.process(buffer: buffer) { value in
                held = 0
                roundTrip(value, limits: limits)
            }
            offset = end
            // Bytes added since the last complete reply are all still held; past the cap the
            // decoder must have thrown.
            precondition(held <= limits.maxReplyBytes, "the decoder held \(held) bytes of an incomplete reply")
        }
    } catch let error as RedisClientError {
        precondition(error.code == .protocolError, "the decoder threw \(error.code.rawValue)")
    } catch {
        preconditionFailure("the decoder threw a foreign error: \(error)")
    }
}

func roundTrip(_ value: RESPValue, limits: RESPDecoder.Limits) {
    var encoded = ByteBufferAllocator().buffer(capacity: 64)
    value.encode(into: &encoded)
    var decoder = RESPDecoder(limits: RESPDecoder.Limits(maxBulkBytes: 1 << 20, maxElements: 1 << 20, maxDepth: limits.maxDepth + 1, maxLineBytes: 1 << 20, maxReplyBytes: 1 << 24))
    var copy = encoded
    guard let again = try? decoder.decode(buffer: &copy), copy.readableBytes == 0 else {
        preconditionFailure("a decoded value did not decode again after encoding")
    }
    var reencoded = ByteBufferAllocator().buffer(capacity: 64)
    again.encode(into: &reencoded)
    precondition(reencoded == encoded, "a decoded value changed in a round trip")
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    checkOneInput(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}
#else
import Foundation

@main
enum RESPFuzzReplay {
    static func main() throws {
        let files = CommandLine.arguments.dropFirst()
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            data.withUnsafeBytes { checkOneInput($0) }
        }
        print("replayed \(files.count) input(s) without a failure")
    }
}
#endif
