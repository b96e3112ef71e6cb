using System.Collections.Immutable;
using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace EdgeLlm.Tests.Layering;

/// <summary>
/// One layer of an assembly: the namespace <see cref="Pattern"/> names (exactly, or with a trailing ".*" the namespace
/// and everything under it) and its <see cref="Rank"/>. A type may use types of its own rank or lower, never higher.
/// </summary>
public readonly record struct Layer(string Pattern, int Rank)
{
    public bool Matches(string ns) => Pattern.EndsWith(".*", StringComparison.Ordinal)
        ? ns == Pattern[..^2] || ns.StartsWith(Pattern[..^1], StringComparison.Ordinal)
        : ns == Pattern;
}

/// <summary>
/// Reads an assembly file with System.Reflection.Metadata (nothing is loaded or run) and lists every reference from a
/// type of one layer to a type of a higher layer. A type's references are its base type and interfaces, generic
/// constraints, the signatures of its fields and methods (properties and events are their accessor methods), the
/// locals of its method bodies and every type, method and field token in their IL (a call, a field access, a
/// <c>newobj</c>, a <c>typeof</c>), generic instantiations included. Nested and compiler-generated types (lambdas,
/// iterators, async state machines) count as the namespace of their outermost declaring type.
/// </summary>
public static class LayerCheck
{
    /// <summary>
    /// The violations among the types whose namespace is <paramref name="root"/> or under it, one line each
    /// ("A.B.Type (rank 2) uses A.C.Other (rank 3)"); a type under root that no layer matches is reported too, so a
    /// new namespace has to be given its place. Types outside root (e.g. &lt;PrivateImplementationDetails&gt;) are ignored.
    /// </summary>
    public static List<string> Violations(string assemblyPath, string root, IReadOnlyList<Layer> layers)
    {
        using var stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        var md = pe.GetMetadataReader();
        var provider = new TypeCollector(md);
        var result = new List<string>();
        var unplaced = new SortedSet<string>(StringComparer.Ordinal);

        int? RankOf(TypeDefinitionHandle h, out string ns)
        {
            ns = Namespace(md, h);
            if (ns != root && !ns.StartsWith(root + ".", StringComparison.Ordinal)) return null;
            int best = -1, bestLength = -1;
            foreach (var l in layers)
                if (l.Matches(ns) && l.Pattern.Length > bestLength) { best = l.Rank; bestLength = l.Pattern.Length; }
            if (best < 0) { unplaced.Add(ns); return null; }
            return best;
        }

        foreach (var th in md.TypeDefinitions)
        {
            if (RankOf(th, out _) is not { } rank) continue;
            var seen = new HashSet<TypeDefinitionHandle>();
            foreach (var used in References(md, provider, pe, th))
            {
                if (!seen.Add(used)) continue;
                if (RankOf(used, out _) is { } usedRank && usedRank > rank)
                    result.Add($"{FullName(md, th)} (rank {rank}) uses {FullName(md, used)} (rank {usedRank})");
            }
        }
        foreach (var ns in unplaced) result.Add($"namespace {ns} is in no layer");
        return result;
    }

    private static IEnumerable<TypeDefinitionHandle> References(MetadataReader md, TypeCollector p, PEReader pe, TypeDefinitionHandle th)
    {
        var t = md.GetTypeDefinition(th);
        var list = new List<TypeDefinitionHandle>();
        if (!t.BaseType.IsNil) list.AddRange(p.Resolve(t.BaseType));
        foreach (var ih in t.GetInterfaceImplementations()) list.AddRange(p.Resolve(md.GetInterfaceImplementation(ih).Interface));
        foreach (var gh in t.GetGenericParameters()) AddConstraints(md, p, gh, list);
        foreach (var fh in t.GetFields()) list.AddRange(md.GetFieldDefinition(fh).DecodeSignature(p, null));
        foreach (var mh in t.GetMethods())
        {
            var m = md.GetMethodDefinition(mh);
            var sig = m.DecodeSignature(p, null);
            list.AddRange(sig.ReturnType);
            foreach (var pt in sig.ParameterTypes) list.AddRange(pt);
            foreach (var gh in m.GetGenericParameters()) AddConstraints(md, p, gh, list);
            if (m.RelativeVirtualAddress == 0) continue;
            var body = pe.GetMethodBody(m.RelativeVirtualAddress);
            if (!body.LocalSignature.IsNil)
                foreach (var local in md.GetStandaloneSignature(body.LocalSignature).DecodeLocalSignature(p, null)) list.AddRange(local);
            foreach (var token in IlTokens(body.GetILBytes() ?? [])) list.AddRange(p.Resolve(MetadataTokens.EntityHandle(token)));
        }
        return list;
    }

    private static void AddConstraints(MetadataReader md, TypeCollector p, GenericParameterHandle gh, List<TypeDefinitionHandle> list)
    {
        foreach (var ch in md.GetGenericParameter(gh).GetConstraints()) list.AddRange(p.Resolve(md.GetGenericParameterConstraint(ch).Type));
    }

    // Operand kind of every IL opcode, from the runtime's own table.
    private static readonly Dictionary<short, OperandType> Operands = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value, o => o.OperandType);

    /// <summary>The metadata tokens in an IL stream (operands of type, method, field, token and signature kind).</summary>
    public static IEnumerable<int> IlTokens(byte[] il)
    {
        for (int i = 0; i < il.Length;)
        {
            short code = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var kind = Operands[code];
            switch (kind)
            {
                case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineType or OperandType.InlineTok:
                    yield return BitConverter.ToInt32(il, i);
                    i += 4;
                    break;
                case OperandType.InlineNone: break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar: i += 1; break;
                case OperandType.InlineVar: i += 2; break;
                case OperandType.InlineI8 or OperandType.InlineR: i += 8; break;
                case OperandType.InlineSwitch: i += 4 + 4 * BitConverter.ToInt32(il, i); break;
                default: i += 4; break; // InlineBrTarget, InlineI, ShortInlineR, InlineSig, InlineString
            }
        }
    }

    private static string Namespace(MetadataReader md, TypeDefinitionHandle h)
    {
        var t = md.GetTypeDefinition(h);
        while (t.IsNested) t = md.GetTypeDefinition(t.GetDeclaringType());
        return md.GetString(t.Namespace);
    }

    private static string FullName(MetadataReader md, TypeDefinitionHandle h)
    {
        var t = md.GetTypeDefinition(h);
        string name = md.GetString(t.Name);
        return t.IsNested ? FullName(md, t.GetDeclaringType()) + "+" + name : md.GetString(t.Namespace) + "." + name;
    }

    /// <summary>Decodes signatures into the assembly's own type definitions they mention (other assemblies' types are dropped).</summary>
    private sealed class TypeCollector(MetadataReader md) : ISignatureTypeProvider<ImmutableArray<TypeDefinitionHandle>, object?>
    {
        private static readonly ImmutableArray<TypeDefinitionHandle> None = [];

        public ImmutableArray<TypeDefinitionHandle> Resolve(EntityHandle h) => h.Kind switch
        {
            HandleKind.TypeDefinition => [(TypeDefinitionHandle)h],
            HandleKind.TypeSpecification => md.GetTypeSpecification((TypeSpecificationHandle)h).DecodeSignature(this, null),
            HandleKind.MethodDefinition => [md.GetMethodDefinition((MethodDefinitionHandle)h).GetDeclaringType()],
            HandleKind.FieldDefinition => [md.GetFieldDefinition((FieldDefinitionHandle)h).GetDeclaringType()],
            HandleKind.MemberReference => Resolve(md.GetMemberReference((MemberReferenceHandle)h).Parent),
            HandleKind.MethodSpecification => MethodSpec((MethodSpecificationHandle)h),
            _ => None, // type references (other assemblies), signatures of calli, strings
        };

        private ImmutableArray<TypeDefinitionHandle> MethodSpec(MethodSpecificationHandle h)
        {
            var spec = md.GetMethodSpecification(h);
            var all = Resolve(spec.Method).ToBuilder();
            foreach (var arg in spec.DecodeSignature(this, null)) all.AddRange(arg);
            return all.ToImmutable();
        }

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => [handle];
        public ImmutableArray<TypeDefinitionHandle> GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => None;
        public ImmutableArray<TypeDefinitionHandle> GetTypeFromSpecification(MetadataReader reader, object? context, TypeSpecificationHandle handle, byte rawTypeKind)
            => reader.GetTypeSpecification(handle).DecodeSignature(this, context);
        public ImmutableArray<TypeDefinitionHandle> GetPrimitiveType(PrimitiveTypeCode typeCode) => None;
        public ImmutableArray<TypeDefinitionHandle> GetSZArrayType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;
        public ImmutableArray<TypeDefinitionHandle> GetArrayType(ImmutableArray<TypeDefinitionHandle> elementType, ArrayShape shape) => elementType;
        public ImmutableArray<TypeDefinitionHandle> GetByReferenceType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;
        public ImmutableArray<TypeDefinitionHandle> GetPointerType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;
        public ImmutableArray<TypeDefinitionHandle> GetPinnedType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;
        public ImmutableArray<TypeDefinitionHandle> GetModifiedType(ImmutableArray<TypeDefinitionHandle> modifier, ImmutableArray<TypeDefinitionHandle> unmodifiedType, bool isRequired)
            => unmodifiedType;
        public ImmutableArray<TypeDefinitionHandle> GetGenericInstantiation(ImmutableArray<TypeDefinitionHandle> genericType, ImmutableArray<ImmutableArray<TypeDefinitionHandle>> typeArguments)
        {
            var all = genericType.ToBuilder();
            foreach (var a in typeArguments) all.AddRange(a);
            return all.ToImmutable();
        }
        public ImmutableArray<TypeDefinitionHandle> GetGenericMethodParameter(object? genericContext, int index) => None;
        public ImmutableArray<TypeDefinitionHandle> GetGenericTypeParameter(object? genericContext, int index) => None;
        public ImmutableArray<TypeDefinitionHandle> GetFunctionPointerType(MethodSignature<ImmutableArray<TypeDefinitionHandle>> signature)
        {
            var all = signature.ReturnType.ToBuilder();
            foreach (var p in signature.ParameterTypes) all.AddRange(p);
            return all.ToImmutable();
        }
    }
}
