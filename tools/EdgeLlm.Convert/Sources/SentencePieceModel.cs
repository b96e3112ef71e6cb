using System.Buffers.Binary;
using System.Text;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (protobuf ModelProto), read by a minimal wire-format reader: the
/// pieces (field 1: piece string = 1, score float = 2, type enum = 3, default NORMAL), the trainer spec
/// (field 2: model_type = 3, vocab_size = 4, byte_fallback = 35, unk/bos/eos/pad ids = 40..43) and the
/// normalizer spec (field 3: name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4). Unknown fields are
/// skipped. SentencePiece's piece types (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6) are
/// exactly llama.cpp's token types.
/// </summary>
public sealed class SentencePieceModel
{
    public required string[] Pieces { get; init; }
    public required float[] Scores { get; init; }
    public required int[] Types { get; init; }

    /// <summary>1 unigram, 2 BPE, 3 word, 4 char.</summary>
    public int ModelType { get; init; } = 1;
    public int TrainerVocabSize { get; init; }
    public bool ByteFallback { get; init; }
    public int UnkId { get; init; }
    public int BosId { get; init; } = 1;
    public int EosId { get; init; } = 2;
    public int PadId { get; init; } = -1;
    public string? NormalizerName { get; init; }
    public bool AddDummyPrefix { get; init; } = true;
    public bool RemoveExtraWhitespaces { get; init; } = true;

    public static SentencePieceModel Load(string path)
    {
        byte[] data = File.ReadAllBytes(path);
        try { return Parse(data); }
        catch (FormatException e) { throw new EdgeLlmException($"{path}: not a SentencePiece model: {e.Message}"); }
    }

    public static SentencePieceModel Parse(ReadOnlySpan<byte> data)
    {
        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<int>();
        int modelType = 1, vocab = 0, unk = 0, bos = 1, eos = 2, pad = -1;
        bool byteFallback = false, dummy = true, removeWs = true;
        string? normName = null;
        var r = new ProtoReader(data);
        while (r.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
            {
                var m = r.Message();
                string piece = "";
                float score = 0;
                int type = 1;
                while (m.Next(out int f, out int w))
                {
                    if (f == 1 && w == 2) piece = m.String();
                    else if (f == 2 && w == 5) score = m.Fixed32Float();
                    else if (f == 3 && w == 0) type = (int)m.Varint();
                    else m.Skip(w);
                }
                pieces.Add(piece);
                scores.Add(score);
                types.Add(type);
            }
            else if (field == 2 && wire == 2)
            {
                var m = r.Message();
                while (m.Next(out int f, out int w))
                {
                    if (w != 0) { m.Skip(w); continue; }
                    long v = (long)m.Varint();
                    switch (f)
                    {
                        case 3: modelType = (int)v; break;
                        case 4: vocab = (int)v; break;
                        case 35: byteFallback = v != 0; break;
                        case 40: unk = (int)v; break;
                        case 41: bos = (int)v; break;
                        case 42: eos = (int)v; break;
                        case 43: pad = (int)v; break;
                    }
                }
            }
            else if (field == 3 && wire == 2)
            {
                var m = r.Message();
                while (m.Next(out int f, out int w))
                {
                    if (f == 1 && w == 2) normName = m.String();
                    else if (f == 3 && w == 0) dummy = m.Varint() != 0;
                    else if (f == 4 && w == 0) removeWs = m.Varint() != 0;
                    else m.Skip(w);
                }
            }
            else r.Skip(wire);
        }
        if (pieces.Count == 0) throw new FormatException("it has no pieces");
        foreach (int t in types)
            if (t is < 1 or > 6) throw new FormatException($"piece type {t} is not a SentencePiece type (1..6)");
        return new SentencePieceModel
        {
            Pieces = pieces.ToArray(), Scores = scores.ToArray(), Types = types.ToArray(),
            ModelType = modelType, TrainerVocabSize = vocab, ByteFallback = byteFallback,
            UnkId = unk, BosId = bos, EosId = eos, PadId = pad,
            NormalizerName = normName, AddDummyPrefix = dummy, RemoveExtraWhitespaces = removeWs,
        };
    }

    /// <summary>
    /// GGUF tokenizer data as llama.cpp's converter writes it for a SentencePiece vocabulary: model "llama",
    /// pre "default", pieces/scores/types as stored, the trainer's special ids (pad only when set), add BOS and
    /// not EOS.
    /// </summary>
    public TokenizerData ToTokenizerData()
    {
        int n = Pieces.Length;
        int Id(int id) => id >= 0 && id < n ? id : -1;
        return new TokenizerData
        {
            Model = "llama",
            Pre = "default",
            Tokens = (string[])Pieces.Clone(),
            Scores = (float[])Scores.Clone(),
            TokenTypes = (int[])Types.Clone(),
            Unknown = Id(UnkId),
            Bos = Id(BosId),
            Eos = Id(EosId),
            Padding = Id(PadId),
            AddBos = true,
            AddEos = false,
            AddSpacePrefix = AddDummyPrefix,
        };
    }

    /// <summary>Protocol-buffers wire format: varint tags, length-delimited submessages; groups are rejected.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _d = data;
        private int _at;

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_at >= _d.Length) return false;
            ulong tag = Varint();
            field = (int)(tag >> 3);
            wire = (int)(tag & 7);
            if (field == 0) throw new FormatException($"field number 0 at byte {_at}");
            return true;
        }

        public ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_at >= _d.Length) throw new FormatException("truncated varint");
                byte b = _d[_at++];
                v |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return v;
            }
            throw new FormatException("varint longer than 10 bytes");
        }

        private ReadOnlySpan<byte> Bytes()
        {
            ulong len = Varint();
            if (len > (ulong)(_d.Length - _at)) throw new FormatException($"length {len} at byte {_at} runs past the end ({_d.Length} bytes)");
            var s = _d.Slice(_at, (int)len);
            _at += (int)len;
            return s;
        }

        public ProtoReader Message() => new(Bytes());

        public string String() => Encoding.UTF8.GetString(Bytes());

        public float Fixed32Float()
        {
            if (_at + 4 > _d.Length) throw new FormatException("truncated fixed32");
            float f = BinaryPrimitives.ReadSingleLittleEndian(_d[_at..]);
            _at += 4;
            return f;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: if (_at + 8 > _d.Length) throw new FormatException("truncated fixed64"); _at += 8; break;
                case 2: Bytes(); break;
                case 5: if (_at + 4 > _d.Length) throw new FormatException("truncated fixed32"); _at += 4; break;
                default: throw new FormatException($"wire type {wire} at byte {_at} is not supported");
            }
        }
    }
}
