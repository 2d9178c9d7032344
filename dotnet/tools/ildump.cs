using System;
using System.Collections.Generic;
using System.Reflection;
using System.Reflection.Emit;
using System.Text;

class IlDump {
  static Dictionary<short, OpCode> ops = new Dictionary<short, OpCode>();
  const BindingFlags All = BindingFlags.Public|BindingFlags.NonPublic|BindingFlags.Static|BindingFlags.Instance|BindingFlags.DeclaredOnly;
  static void Main(string[] args) {
    foreach (FieldInfo f in typeof(OpCodes).GetFields(BindingFlags.Public|BindingFlags.Static)) {
      OpCode o = (OpCode)f.GetValue(null); ops[o.Value] = o;
    }
    Assembly corelib = typeof(object).Assembly;
    Console.WriteLine("CoreLib: " + corelib.FullName + " " + corelib.Location);
    var info = corelib.GetCustomAttribute<AssemblyInformationalVersionAttribute>();
    if (info != null) Console.WriteLine("InformationalVersion: " + info.InformationalVersion);
    // args: mode typeName [member]
    string mode = args[0];
    Type t = corelib.GetType(args[1], false);
    if (mode == "fields") {
      foreach (FieldInfo f in t.GetFields(All)) {
        string v = "";
        try {
          if (f.IsLiteral) v = " = " + f.GetRawConstantValue();
          else if (f.IsStatic) v = " = " + f.GetValue(null);
        } catch (Exception e) { v = " (" + e.GetType().Name + ")"; }
        Console.WriteLine((f.IsStatic?"static ":"") + f.FieldType.Name + " " + f.Name + v);
      }
      return;
    }
    if (mode == "members") {
      foreach (MemberInfo m in t.GetMembers(All)) Console.WriteLine(m.MemberType + " " + m);
      foreach (Type n in t.GetNestedTypes(All)) Console.WriteLine("nested " + n.FullName);
      return;
    }
    if (mode == "obj") { // dump instance fields of a static singleton: args[2] = static field name
      object o = t.GetField(args[2], All).GetValue(null);
      foreach (FieldInfo f in o.GetType().GetFields(All)) {
        object v = f.GetValue(o);
        Console.WriteLine(f.FieldType.Name + " " + f.Name + " = " + v);
      }
      return;
    }

    if (mode == "xref") { // args[1] ignored type; args[2] = member name substring to find
      foreach (Type ty in corelib.GetTypes()) {
        foreach (MethodBase m in AllMethods(ty)) {
          MethodBody b = null; try { b = m.GetMethodBody(); } catch {}
          if (b == null) continue;
          byte[] il = b.GetILAsByteArray(); int i = 0;
          while (i < il.Length) {
            short code = il[i++]; if (code == 0xFE) code = (short)(0xFE00 | il[i++]);
            OpCode op; if (!ops.TryGetValue(code, out op)) break;
            int size = 0;
            switch (op.OperandType) {
              case OperandType.InlineNone: size=0; break;
              case OperandType.ShortInlineBrTarget: case OperandType.ShortInlineI: case OperandType.ShortInlineVar: size=1; break;
              case OperandType.InlineVar: size=2; break;
              case OperandType.InlineI8: case OperandType.InlineR: size=8; break;
              case OperandType.InlineSwitch: size = 4 + 4*BitConverter.ToInt32(il, i); break;
              default: size=4; break;
            }
            if (op.OperandType == OperandType.InlineField || op.OperandType == OperandType.InlineMethod || op.OperandType == OperandType.InlineTok) {
              int tok = BitConverter.ToInt32(il, i);
              try {
                Type[] ga = m.DeclaringType.IsGenericType ? m.DeclaringType.GetGenericArguments() : null;
                Type[] ma = (m is MethodInfo && m.IsGenericMethod) ? m.GetGenericArguments() : null;
                MemberInfo r = m.Module.ResolveMember(tok, ga, ma);
                string full = (r.DeclaringType != null ? r.DeclaringType.FullName + "::" : "") + r.Name;
                if (full.Contains(args[2])) Console.WriteLine(ty.FullName + "::" + m.Name + " " + op.Name + " " + full);
              } catch {}
            }
            i += size;
          }
        }
      }
      return;
    }
    // il
    foreach (MethodBase m in (IEnumerable<MethodBase>)AllMethods(t)) {
      if (m.Name != args[2]) continue;
      Console.WriteLine("=== " + t.FullName + "::" + m);
      MethodBody body = m.GetMethodBody();
      if (body == null) { Console.WriteLine("(no body)"); continue; }
      byte[] il = body.GetILAsByteArray();
      Module mod = m.Module;
      int i = 0;
      while (i < il.Length) {
        int start = i;
        short code = il[i++];
        if (code == 0xFE) code = (short)(0xFE00 | il[i++]);
        OpCode op = ops[code];
        string arg = "";
        switch (op.OperandType) {
          case OperandType.InlineNone: break;
          case OperandType.ShortInlineBrTarget: { sbyte d = (sbyte)il[i]; i += 1; arg = "IL_" + (i + d).ToString("x4"); break; }
          case OperandType.ShortInlineI: arg = ((sbyte)il[i]).ToString(); i += 1; break;
          case OperandType.ShortInlineVar: arg = il[i].ToString(); i += 1; break;
          case OperandType.InlineVar: arg = BitConverter.ToInt16(il, i).ToString(); i += 2; break;
          case OperandType.InlineBrTarget: { int d = BitConverter.ToInt32(il, i); i += 4; arg = "IL_" + (i + d).ToString("x4"); break; }
          case OperandType.InlineI: arg = BitConverter.ToInt32(il, i).ToString(); i += 4; break;
          case OperandType.InlineI8: arg = BitConverter.ToInt64(il, i).ToString(); i += 8; break;
          case OperandType.ShortInlineR: arg = BitConverter.ToSingle(il, i).ToString(); i += 4; break;
          case OperandType.InlineR: arg = BitConverter.ToDouble(il, i).ToString(); i += 8; break;
          case OperandType.InlineString: { int tok = BitConverter.ToInt32(il, i); i += 4; arg = "\"" + mod.ResolveString(tok) + "\""; break; }
          case OperandType.InlineSwitch: { int n = BitConverter.ToInt32(il, i); i += 4; var sb = new StringBuilder(); int end = i + 4*n; for (int k=0;k<n;k++){ sb.Append("IL_" + (end + BitConverter.ToInt32(il, i)).ToString("x4") + " "); i+=4;} arg = sb.ToString(); break; }
          default: {
            int tok = BitConverter.ToInt32(il, i); i += 4;
            try {
              Type[] ga = m.DeclaringType.IsGenericType ? m.DeclaringType.GetGenericArguments() : null;
              Type[] ma = (m is MethodInfo && m.IsGenericMethod) ? m.GetGenericArguments() : null;
              MemberInfo r = mod.ResolveMember(tok, ga, ma);
              arg = (r.DeclaringType != null ? r.DeclaringType.Name + "::" : "") + r.ToString();
            } catch (Exception e) { arg = "tok 0x" + tok.ToString("x8") + " (" + e.GetType().Name + ")"; }
            break;
          }
        }
        Console.WriteLine("  IL_" + start.ToString("x4") + ": " + op.Name + " " + arg);
      }
    }
  }
  static List<MethodBase> AllMethods(Type t) {
    var l = new List<MethodBase>();
    foreach (MethodInfo m in t.GetMethods(All)) l.Add(m);
    foreach (ConstructorInfo c in t.GetConstructors(All)) l.Add(c);
    return l;
  }
}
