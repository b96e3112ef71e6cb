using System.Buffers.Binary;
using System.Text;
using EdgeLlm.Convert.Sources;

namespace EdgeLlm.TestSupport;

/// <summary>One tensor of a state dict to pickle: its own storage (key, element type) holding it contiguously.</summary>
public sealed record PickledTensor(string Name, string StorageKey, SourceDType DType, long[] Shape);

/// <summary>
/// Writes the <c>data.pkl</c> of a <c>torch.save(state_dict)</c> archive with the opcodes CPython's protocol-2
/// pickler emits for it: an OrderedDict (GLOBAL + EMPTY_TUPLE + REDUCE, then MARK … SETITEMS in batches of
/// 1000) of <c>_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())</c>, every
/// object memoized (BINPUT / LONG_BINPUT) and repeats fetched back (BINGET / LONG_BINGET), followed by the
/// OrderedDict's <c>_metadata</c> state and BUILD.
/// </summary>
public sealed class TorchPickleWriter
{
    private readonly MemoryStream _out = new();
    private readonly Dictionary<string, int> _memo = new(StringComparer.Ordinal);
    private int _next;

    public static byte[] StateDict(IReadOnlyList<PickledTensor> tensors)
    {
        var w = new TorchPickleWriter();
        w.Op(0x80); w.Op(2); // PROTO 2
        w.EmptyOrderedDict();
        for (int start = 0; start < tensors.Count; start += 1000)
        {
            int end = Math.Min(tensors.Count, start + 1000);
            if (end - start > 1) w.Op((byte)'(');
            for (int i = start; i < end; i++)
            {
                w.Str(tensors[i].Name);
                w.Tensor(tensors[i]);
            }
            w.Op(end - start > 1 ? (byte)'u' : (byte)'s');
        }
        // state: {'_metadata': OrderedDict({'': {'version': 1}})}, then BUILD (as state_dict() carries it)
        w.Op((byte)'}'); w.Put();
        w.Str("_metadata");
        w.EmptyOrderedDict();
        w.Str("");
        w.Op((byte)'}'); w.Put();
        w.Str("version");
        w.Int(1);
        w.Op((byte)'s');
        w.Op((byte)'s');
        w.Op((byte)'s');
        w.Op((byte)'b');
        w.Op((byte)'.');
        return w._out.ToArray();
    }

    private void Tensor(PickledTensor t)
    {
        Global("torch._utils", "_rebuild_tensor_v2");
        Op((byte)'(');
        // persistent id ('storage', torch.XStorage, key, 'cpu', numel) + BINPERSID
        long numel = 1;
        foreach (long d in t.Shape) numel *= d;
        Op((byte)'(');
        Str("storage");
        Global("torch", t.DType switch { SourceDType.BF16 => "BFloat16Storage", SourceDType.F16 => "HalfStorage", _ => "FloatStorage" });
        Str(t.StorageKey);
        Str("cpu");
        Int(numel);
        Op((byte)'t'); Put();
        Op((byte)'Q');
        Int(0); // storage offset
        IntTuple(t.Shape);
        var stride = new long[t.Shape.Length];
        long s = 1;
        for (int i = t.Shape.Length - 1; i >= 0; i--) { stride[i] = s; s *= t.Shape[i]; }
        IntTuple(stride);
        Op(0x89); // requires_grad False
        EmptyOrderedDict(); // backward hooks
        Op((byte)'t'); Put();
        Op((byte)'R'); Put();
    }

    private void EmptyOrderedDict()
    {
        Global("collections", "OrderedDict");
        Op((byte)')');
        Op((byte)'R'); Put();
    }

    private void IntTuple(long[] v)
    {
        if (v.Length == 0) { Op((byte)')'); return; }
        if (v.Length > 3) Op((byte)'(');
        foreach (long x in v) Int(x);
        Op(v.Length switch { 1 => 0x85, 2 => 0x86, 3 => 0x87, _ => (byte)'t' });
        Put();
    }

    private void Global(string module, string name)
    {
        if (Get("\0g" + module + "." + name)) return;
        Op((byte)'c');
        Raw(Encoding.ASCII.GetBytes(module + "\n" + name + "\n"));
        Put("\0g" + module + "." + name);
    }

    private void Str(string s)
    {
        if (Get(s)) return;
        byte[] b = Encoding.UTF8.GetBytes(s);
        Op((byte)'X');
        Span<byte> n = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(n, b.Length);
        Raw(n);
        Raw(b);
        Put(s);
    }

    private void Int(long v)
    {
        Span<byte> b = stackalloc byte[8];
        if (v is >= 0 and < 256) { Op((byte)'K'); Op((byte)v); }
        else if (v is >= 0 and < 65536) { Op((byte)'M'); BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)v); Raw(b[..2]); }
        else if (v is >= int.MinValue and <= int.MaxValue) { Op((byte)'J'); BinaryPrimitives.WriteInt32LittleEndian(b, (int)v); Raw(b[..4]); }
        else
        {
            // LONG1: shortest two's complement little-endian
            BinaryPrimitives.WriteInt64LittleEndian(b, v);
            int n = 8;
            while (n > 1 && ((b[n - 1] == 0 && (b[n - 2] & 0x80) == 0) || (b[n - 1] == 0xFF && (b[n - 2] & 0x80) != 0))) n--;
            Op(0x8a); Op((byte)n); Raw(b[..n]);
        }
    }

    /// <summary>Memoizes the top of the stack (BINPUT below 256, else LONG_BINPUT).</summary>
    private void Put(string? key = null)
    {
        int id = _next++;
        if (key is not null) _memo[key] = id;
        if (id < 256) { Op((byte)'q'); Op((byte)id); }
        else { Op((byte)'r'); Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, id); Raw(b); }
    }

    private bool Get(string key)
    {
        if (!_memo.TryGetValue(key, out int id)) return false;
        if (id < 256) { Op((byte)'h'); Op((byte)id); }
        else { Op((byte)'j'); Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, id); Raw(b); }
        return true;
    }

    private void Op(byte b) => _out.WriteByte(b);

    private void Raw(ReadOnlySpan<byte> b) => _out.Write(b);
}
