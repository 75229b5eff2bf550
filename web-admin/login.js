'use strict';
// The login page's only script: say why a sign-in was refused, and avoid double submits. The
// form itself is a plain POST to /login (CSP form-action 'self'), so it works without this file.
(function loginPage() {
  // POST /login answers a refused form post with 303 to /login.html?error=<reason>.
  var MESSAGES = {
    invalid: 'That token was not accepted. Try again.',
    rate_limited: 'Too many failed sign-ins from this address. Wait a minute, then try again.',
  };
  var reason = new URLSearchParams(window.location.search).get('error');
  var error = document.getElementById('login-error');
  if (error && reason !== null) {
    error.textContent = Object.prototype.hasOwnProperty.call(MESSAGES, reason) ? MESSAGES[reason] : MESSAGES.invalid;
    error.hidden = false;
  }
  // Back to the link that led here (set by the server's redirect, or by the UI on a 401): a path
  // on this admin only, never another site. The server checks it again (src/admin/next-path.ts).
  var next = safeNext(new URLSearchParams(window.location.search).get('next'));
  var nextField = document.getElementById('next');
  var nextNote = document.getElementById('login-next');
  if (next !== null && nextField) {
    nextField.value = next;
    if (nextNote) {
      nextNote.textContent = 'After signing in: ' + next;
      nextNote.hidden = false;
    }
  }
  var form = document.getElementById('login-form');
  var field = document.getElementById('token');
  if (form) {
    form.addEventListener('submit', function disableOnSubmit() {
      var button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
    });
  }
  if (field) field.focus();

  // Accepts exactly what src/admin/next-path.ts safeNextPath accepts; null for what it refuses.
  function safeNext(value) {
    if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return null;
    if (value.charAt(0) !== '/' || value.charAt(1) === '/' || /[\\\s\u0000-\u001f\u007f]/.test(value)) return null;
    var url;
    try {
      url = new URL(value, window.location.origin);
    } catch (err) {
      return null;
    }
    if (url.origin !== window.location.origin) return null;
    if (url.pathname === '/login' || url.pathname === '/logout' || url.pathname.indexOf('/login.') === 0) return null;
    return url.pathname + url.search + url.hash;
  }
}());
