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
  var form = document.getElementById('login-form');
  var field = document.getElementById('token');
  if (form) {
    form.addEventListener('submit', function disableOnSubmit() {
      var button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
    });
  }
  if (field) field.focus();
}());
